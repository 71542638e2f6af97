``twistd keycard-bouncer --listen`` is repeatable: every endpoint given
serves the same bouncer (a second one used to replace the first, silently).
