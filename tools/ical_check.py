"""Parses an iCalendar free/busy answer with an independent parser (Python's icalendar) and
prints what it understood as JSON, for the end-to-end tests to compare with the JSON answer:
python tools/ical_check.py < answer.ics

Strict: the input must use CRLF line endings and no line may exceed 75 octets (RFC 5545
section 3.1); the parser must find exactly one VCALENDAR of VFREEBUSY components."""

import json
import sys

from icalendar import Calendar

raw = sys.stdin.buffer.read()
lines = raw.split(b"\r\n")
if lines[-1] != b"":
    sys.exit("the content does not end with CRLF")
for number, line in enumerate(lines[:-1], start=1):
    if b"\n" in line or b"\r" in line:
        sys.exit(f"line {number}: a bare LF or CR")
    if len(line) > 75:
        sys.exit(f"line {number}: {len(line)} octets, more than 75")

calendar = Calendar.from_ical(raw.decode("utf-8"))
if calendar.name != "VCALENDAR":
    sys.exit(f"not a VCALENDAR: {calendar.name}")
out = {"version": str(calendar.get("VERSION")), "method": str(calendar.get("METHOD")), "schedules": []}
for component in calendar.subcomponents:
    if component.name != "VFREEBUSY":
        sys.exit(f"unexpected component {component.name}")
    periods = []
    values = component.get("FREEBUSY", [])
    if not isinstance(values, list):
        values = [values]
    for value in values:
        kind = value.params.get("FBTYPE", "BUSY")
        for start, end in value.dt if isinstance(value.dt, list) else [value.dt]:
            periods.append([kind, start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ")])
    status = component.get("REQUEST-STATUS")
    out["schedules"].append({
        "organizer": str(component.get("ORGANIZER")),
        "uid": str(component.get("UID")),
        "dtstart": component.decoded("DTSTART").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dtend": component.decoded("DTEND").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "periods": periods,
        "request_status": None if status is None else str(status),
    })
print(json.dumps(out))
