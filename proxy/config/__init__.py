"""Configuration: what the proxy runs with, and how it is built from a YAML file and the
environment. Import from the module that owns each concern:

    settings.py       the frozen dataclasses every other module reads (the run-time schema)
    schema.py         the table of keys: kind, default, secret or not, check
    checks.py         checks of one value each (port, region, URL, role ARN...)
    files.py          reading the YAML file and checking its section, key and profile names
    environment.py    SPAPI_PROXY_<SECTION>_<KEY> overrides and the config file's path
    interpolation.py  ${VAR}, ${VAR:-default} and ${file:/path} in values
    values.py         one raw value to its typed form (interpolate, convert, check)
    profiles.py       how named profiles inherit from the top level
    validate.py       checks across keys (paired credentials, an exposed listener)
    load.py           load_settings: the one entry point that builds Settings
    render.py         check-config's output with secrets masked, the file-mode warning
    errors.py         ConfigError, naming the key at fault and never a secret
"""
