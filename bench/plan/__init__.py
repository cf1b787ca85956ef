"""What to run: configs, sweep axes and the cells they expand to, devices, presets."""
