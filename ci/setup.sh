#!/usr/bin/env bash
# Install every host dependency with apt, and the pinned kernel source.
# Idempotent: when everything is already installed it returns in about a second.
. "$(dirname "$0")/lib.sh"

mkdir -p "$BUILD"
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$TOP/ci/packages.txt")

missing=()
for p in "${pkgs[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	[ "${st:0:2}" = "ii" ] || missing+=("$p")
done
have_kernel=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$KERNEL_PKG" 2>/dev/null || true)

apt_updated=0
apt_update() {
	[ $apt_updated = 1 ] && return 0
	say "setup: apt-get update"
	apt-get update -qq || die "apt-get update failed"
	apt_updated=1
}
apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ||
		die "apt-get install $* failed"
}

if [ ${#missing[@]} -gt 0 ]; then
	apt_update
	say "setup: installing ${missing[*]}"
	apt_install "${missing[@]}"
fi

if [ "$have_kernel" = "ii  $KERNEL_PKG_VERSION" ] || [ "$have_kernel" = "ii $KERNEL_PKG_VERSION" ]; then
	rm -f "$BASE_WARNING_FILE"
else
	apt_update
	if apt-cache madison "$KERNEL_PKG" | awk -F'|' '{gsub(/ /,"",$2); print $2}' |
		grep -qxF "$KERNEL_PKG_VERSION"; then
		say "setup: installing $KERNEL_PKG=$KERNEL_PKG_VERSION"
		apt_install --allow-downgrades "$KERNEL_PKG=$KERNEL_PKG_VERSION"
		rm -f "$BASE_WARNING_FILE"
	else
		cand=$(apt-cache policy "$KERNEL_PKG" | awk '/Candidate:/ {print $2}')
		[ -n "$cand" ] && [ "$cand" != "(none)" ] ||
			die "the mirror has no $KERNEL_PKG at all (pinned $KERNEL_PKG_VERSION)"
		printf '%s\n' \
			"pinned base $KERNEL_PKG=$KERNEL_PKG_VERSION is not on the mirror;" \
			"continuing on $KERNEL_PKG=$cand instead. Results are NOT for the pinned base." \
			>"$BASE_WARNING_FILE"
		base_warning
		apt_install "$KERNEL_PKG=$cand"
	fi
fi

[ -f "$KERNEL_TARBALL" ] || die "$KERNEL_TARBALL missing after installing $KERNEL_PKG"
if [ ! -s "$BASE_WARNING_FILE" ]; then
	# Hash only when the tarball changed since the last check.
	stamp=$BUILD/.tarball-verified
	key="$(stat -c '%s %Y' "$KERNEL_TARBALL") $KERNEL_TARBALL_SHA256"
	if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
		sum=$(sha256sum "$KERNEL_TARBALL" | cut -d' ' -f1)
		[ "$sum" = "$KERNEL_TARBALL_SHA256" ] ||
			die "$KERNEL_TARBALL has sha256 $sum, the pin says $KERNEL_TARBALL_SHA256"
		echo "$key" >"$stamp"
	fi
fi
base_warning
say "setup: done ($KERNEL_PKG $(dpkg-query -W -f='${Version}' "$KERNEL_PKG"))"
