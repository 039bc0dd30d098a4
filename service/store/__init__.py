"""The service layer: what routes and the dispatcher do to the database, without HTTP.

``jobs`` (submit, list, cancel, delete, logs), ``leases`` (how controllers claim, own and
hand over running jobs), ``progress`` (recording what a runner reports), ``devices``.
"""
