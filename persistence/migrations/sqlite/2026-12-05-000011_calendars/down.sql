DROP TABLE working_hours;
DROP TABLE calendar_blocks;
