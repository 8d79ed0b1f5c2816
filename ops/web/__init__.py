"""`gwctl web`: the pair in a browser (Flask application served by cheroot with TLS).

- ``app.py``      the application: pages, login, roles, CSRF, audit log
- ``nodes.py``    the nodes it shows, over their control channels
- ``ladder_svg.py`` a call's ladder (gateway/ladder.py) drawn in SVG
- ``config_pages.py`` the configuration as the manual's WebUI pages
- ``server.py``   the TLS server on the management address"""
