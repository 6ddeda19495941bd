#!/usr/bin/env bash
# Regenerate patches/ and series from build/linux (base..series).
# Output is stable: zero commit ids, no numbering, no signature, fixed
# abbreviation; files whose content did not change are not rewritten.
. "$(dirname "$0")/lib.sh"

LINUX=${LINUX:-$BUILD/linux}
cd "$LINUX"
git rev-parse -q --verify refs/heads/series >/dev/null || die "no branch 'series' in $LINUX (run make tree)"
[ -z "$(git status --porcelain --untracked-files=no)" ] || die "$LINUX has uncommitted changes"

out=$BUILD/export.tmp
rm -rf "$out"
mkdir -p "$out"
git -c core.abbrev=12 -c diff.noprefix=false format-patch -q --zero-commit --no-signature \
	--no-numbered --no-cover-letter --no-base -o "$out" base..series

tmp_series=$out/series
{
	echo "# Patch order for git am onto the pinned base (ci/kernel.pin)."
	echo "# One file of patches/ per line. Regenerate with: make patches"
	(cd "$out" && ls -1 -- *.patch 2>/dev/null || true)
} >"$tmp_series"

changed=0
for f in "$out"/*.patch; do
	[ -e "$f" ] || continue
	b=$(basename "$f")
	if ! cmp -s "$f" "$TOP/patches/$b"; then
		cp "$f" "$TOP/patches/$b"
		say "patches: wrote $b"
		changed=$((changed + 1))
	fi
done
for f in "$TOP"/patches/*.patch; do
	[ -e "$f" ] || continue
	b=$(basename "$f")
	if [ ! -e "$out/$b" ]; then
		rm -f "$f"
		say "patches: removed $b"
		changed=$((changed + 1))
	fi
done
cmp -s "$tmp_series" "$TOP/series" || { cp "$tmp_series" "$TOP/series"; changed=$((changed + 1)); }
rm -rf "$out"

# The tree now matches the exported files.
git config balloon.tip "$(git rev-parse series)"
git config balloon.patches "$(patches_key)"
say "patches: $(git rev-list --count base..series) patches, $changed file(s) changed"
