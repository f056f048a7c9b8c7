"""The inspector: a local page showing the callbacks a store holds and each conversation's timeline, live.

`serve` offers it at `/_/`; `tavus-callbacks inspect` opens it on any store, read-only. `reading` reads the
store, `views` renders what it read (escaped: payloads are hostile input), `app` is the small ASGI app.
"""
