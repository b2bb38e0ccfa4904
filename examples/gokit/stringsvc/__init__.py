"""Go kit's stringsvc: Uppercase and Count, as endpoints behind an HTTP transport."""
