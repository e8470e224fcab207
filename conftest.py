# Makes the checkout's top directory importable in tests (``from lab.fabric import ...``).
