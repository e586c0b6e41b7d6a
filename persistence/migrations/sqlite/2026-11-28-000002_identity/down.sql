DROP TABLE signing_keys;
DROP TABLE assertion_jtis;
DROP TABLE partner_keys;
