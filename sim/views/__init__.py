"""Figures of a run, the month-by-month animation, the Solara app."""
