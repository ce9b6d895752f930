"""Static HTML report pages for the ranked features.

    page_data   what the pages show: the configuration, the inputs, and the per-feature data
                (scores, density per language, top pairs, top tokens) gathered from the tables
                with Polars; no HTML and no renderer import, so the stages that only build
                page entries (logit lens, MCS) import it without Jinja
    pages       renders that data with the Jinja templates in templates/ (autoescaped) and
                writes the folder with the shared assets/pages.css and assets/pages.js

Templates and assets are package data (pyproject ``[tool.setuptools.package-data]``), so a
non-editable install renders the same pages.
"""
