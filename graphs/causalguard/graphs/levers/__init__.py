"""Levers that move values (role prompts, SAE features): finding, measuring and cataloguing them."""
