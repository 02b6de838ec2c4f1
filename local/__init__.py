"""The local stack: the whole system on one machine, on the embedded AWS emulator (moto)."""
