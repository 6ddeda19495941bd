# Shared helpers for the ci/ shell scripts. Source it; it sets TOP and
# reads the pin.
set -euo pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$TOP/build
# shellcheck source=ci/kernel.pin
. "$TOP/ci/kernel.pin"
# Written by setup.sh when the pinned base could not be installed; every
# report repeats it.
BASE_WARNING_FILE=$BUILD/BASE-WARNING

say() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

base_warning() {
	if [ -s "$BASE_WARNING_FILE" ]; then
		say "################################################################"
		sed 's/^/# WARNING: /' "$BASE_WARNING_FILE" >&2
		say "################################################################"
	fi
}

# The identity the series' commits and sign-offs carry.
SERIES_NAME="Balloon Series"
SERIES_EMAIL="balloon-series@localhost.invalid"

# The patch files listed in `series`, in order, comments and blanks dropped.
series_files() {
	sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$TOP/series"
}

# A hash of `series` and every patch it lists: what the tree was built from.
patches_key() {
	{
		cat "$TOP/series"
		series_files | while read -r f; do cat "$TOP/patches/$f"; done
	} | sha256sum | cut -d' ' -f1
}
