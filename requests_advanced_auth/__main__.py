"""``python -m requests_advanced_auth``: the ``advanced-auth`` command line."""

from requests_advanced_auth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
