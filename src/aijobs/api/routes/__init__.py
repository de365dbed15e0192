"""One router per resource: jobs, me, admin, health, pages."""
