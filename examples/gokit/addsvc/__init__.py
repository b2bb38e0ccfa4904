"""Go kit's addsvc: Sum and Concat; Concat's result optionally uppercased by stringsvc, called through
``service.upstream`` (the workshop's "dependency on stringsvc" step)."""
