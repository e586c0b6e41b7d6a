DROP TABLE reviewer_sessions;
