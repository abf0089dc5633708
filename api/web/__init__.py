"""Pages and static files served to browsers (today: the API docs; the Hub console lands here)."""
