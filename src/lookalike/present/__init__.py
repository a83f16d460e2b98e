"""The present seam: hits as a table, JSON, or the seed's grid picture."""

from .text import hits_json, hits_table, info_lines, report_lines

__all__ = ["hits_json", "hits_table", "info_lines", "report_lines"]
