"""Schedules (RFC 5545 recurrence, Asia/Ho_Chi_Minh) turned into programme requests. Later issue."""
