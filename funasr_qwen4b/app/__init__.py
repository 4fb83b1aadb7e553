"""The application: what a user runs, on top of everything else — the
`Transcriber` API, the command line, the server and `bench`. Nothing below
imports it; it is the only code that chooses a backend (`backends.py`)."""
