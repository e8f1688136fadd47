{# A piece of a layer's grid for static/layer.js: its tiles' HTML, made by the page's own macro and escaped as the page
   is, as a JSON string (script_json escapes "<"). A script, not a .json file: <script src> works on file:// pages,
   where fetch() is refused. #}
{% from "macros.html" import grid_tile %}
{% set tiles %}{% for u in units %}{{ grid_tile(u, layer_name) }}{% endfor %}{% endset %}
(window.MICROSCOPE_PIECES = window.MICROSCOPE_PIECES || {})[{{ key|script_json }}] = {{ tiles|script_json }};
