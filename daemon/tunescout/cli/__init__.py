"""The command line: the entry point and parser, the inspect commands, playlist, doctor.
Sits on top: nothing imports it."""
