"""Presentation: charts described once, drawn with matplotlib and plotly, and the report."""
