{# The SAE layer page's other table rows, shown on request (static/layer.js): the page's own macro, escaped as the
   page is, in a JSON string; a script because <script src> works on file:// pages, where fetch() is refused. #}
{% from "views/sae.html" import feature_rows %}
{% set rows %}{{ feature_rows(features) }}{% endset %}
(window.MICROSCOPE_PIECES = window.MICROSCOPE_PIECES || {})[{{ key|script_json }}] = {{ rows|script_json }};
