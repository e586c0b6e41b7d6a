-- Calendars as the publisher sends them, keyed by the directory entry whose email is the
-- mailbox (so a calendar follows its entry when the address changes). A replace deletes the
-- blocks whose start lies in its range (calendar_blocks_start); a free/busy query reads the
-- blocks that end after the window starts and start before it ends (calendar_blocks_end).
CREATE TABLE calendar_blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL,
    start_at TIMESTAMP NOT NULL,
    end_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL,
    subject TEXT,
    location TEXT,
    private BOOLEAN NOT NULL
);
CREATE INDEX calendar_blocks_start ON calendar_blocks (entry_id, start_at);
CREATE INDEX calendar_blocks_end ON calendar_blocks (entry_id, end_at, start_at);

-- When a mailbox's owner works: an IANA time zone, the days (comma-separated English names,
-- monday first) and the local start and end time of day (HH:MM).
CREATE TABLE working_hours (
    entry_id TEXT PRIMARY KEY NOT NULL,
    time_zone TEXT NOT NULL,
    days TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    changed_at TIMESTAMP NOT NULL
);
