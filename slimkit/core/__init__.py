"""The ground floor: errors, options, the Paddle build check, imports, model surgery, seeds, devices, processes."""
