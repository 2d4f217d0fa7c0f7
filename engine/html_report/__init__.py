"""The campaign report as one self-contained HTML page (``dispatch report --html FILE``).

:func:`~engine.html_report.data.gather` reads what the page shows from the store;
:func:`~engine.html_report.page.render` turns it into the page. Charts are SVG drawn by
pygal (:mod:`engine.html_report.charts`); nothing on the page is loaded from elsewhere.
"""

from engine.html_report.data import ReportData, gather
from engine.html_report.page import render

__all__ = ["ReportData", "gather", "render"]
