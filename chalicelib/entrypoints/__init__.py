"""Entry points: everything AWS invokes — HTTP routes (blueprints), the events stream
handler, the scheduled jobs. Each parses its input, calls one service from the wired
`Services` (`runtime.services()`), and maps domain errors to answers; none reaches an
adapter directly. `app.py` only registers them.
"""
