"""Synthetic French demo data: card payments and smart-meter readings, fixed seed, vectorised."""
