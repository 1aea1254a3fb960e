"""Analysis supervision in the daemon (supervisor, verdict, zygote client, memory gate) and the
zygote process itself. Imports leaves and the store, never library/ or analysis/ (the zygote
loads the analyser by name)."""
