"""Limits on node config input: each is named here once, and each has its own error.

A config file comes from a FAT partition anyone can write, from cloud user-data or from
a URL; nothing in it is trusted until parsed. The limits are far above any real config
(k3OS's own examples are a few KiB) and low enough that a hostile file costs the node
well under a second and a few MiB.
"""

MAX_SOURCE_BYTES = 1 << 20  # one config file, cmdline or user-data, before decoding
MAX_DEPTH = 32  # nesting of maps and lists, aliases followed
MAX_NODES = 100_000  # YAML values after alias expansion ("billion laughs")
MAX_INT_DIGITS = 64  # an integer longer than this is no setting of ours
MAX_WRITE_FILE_BYTES = 8 << 20  # one write_files entry, decoded (base64, gzip)
MAX_WRITE_FILES_BYTES = 32 << 20  # all write_files entries together, decoded
MAX_CONFIG_URL_BYTES = MAX_SOURCE_BYTES  # config_url's answer
MAX_MANIFEST_BYTES = 4 << 20  # one manifest fetched by URL
MAX_AIRGAP_IMAGE_BYTES = 8 << 30  # one air-gap image tarball
URL_TIMEOUT_S = 15.0  # connect and read timeout of each config download
