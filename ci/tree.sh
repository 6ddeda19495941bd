#!/usr/bin/env bash
# Materialize build/linux: the pinned tarball as one commit tagged `base`,
# then every patch in `series` applied with `git am` on branch `series`.
#
# Re-running is cheap: the base is extracted only when the pin changes, and
# the series is re-applied only when series/patches changed. Commits made in
# build/linux that were not exported with `make patches` are never thrown
# away silently: the script refuses unless FORCE=1.
. "$(dirname "$0")/lib.sh"

LINUX=${LINUX:-$BUILD/linux}
FORCE=${FORCE:-0}
base_warning

tarball_key() {
	if [ -s "$BASE_WARNING_FILE" ]; then
		sha256sum "$KERNEL_TARBALL" | cut -d' ' -f1
	else
		echo "$KERNEL_TARBALL_SHA256"
	fi
}

# Fixed identity and dates make the base commit, and so every series
# commit, the same object on every machine.
export GIT_AUTHOR_NAME="$SERIES_NAME" GIT_AUTHOR_EMAIL="$SERIES_EMAIL"
export GIT_COMMITTER_NAME="$SERIES_NAME" GIT_COMMITTER_EMAIL="$SERIES_EMAIL"

make_base() {
	local key=$1 pkgver tmp
	pkgver=$(dpkg-query -W -f='${Version}' "$KERNEL_PKG")
	say "tree: extracting $KERNEL_TARBALL ($KERNEL_PKG $pkgver) into $LINUX"
	rm -rf "$LINUX"
	tmp=$LINUX.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp"
	tar -xJf "$KERNEL_TARBALL" -C "$tmp" --strip-components=1
	local kv
	kv=$(make -s -C "$tmp" kernelversion 2>/dev/null)
	if [ "$kv" != "$KERNEL_VERSION" ]; then
		[ -s "$BASE_WARNING_FILE" ] ||
			die "tarball holds $kv, the pin says $KERNEL_VERSION"
		echo "the base tree is Linux $kv, not the pinned $KERNEL_VERSION" >>"$BASE_WARNING_FILE"
		base_warning
	fi
	(
		cd "$tmp"
		git init -q -b base-import .
		git config user.name "$SERIES_NAME"
		git config user.email "$SERIES_EMAIL"
		git config core.abbrev 12
		git config gc.auto 0
		# Debian's top-level .gitignore ignores everything at the top level;
		# the base is the whole tarball, so add with -f.
		git add -A -f
		GIT_AUTHOR_DATE='2000-01-01T00:00:00+0000' \
		GIT_COMMITTER_DATE='2000-01-01T00:00:00+0000' \
			git commit -q -m "base: $KERNEL_PKG $pkgver (Linux $kv)" \
				-m "Pristine content of $KERNEL_TARBALL, sha256 $key."
		git tag base
		git config balloon.base "$key"
	)
	mv "$tmp" "$LINUX"
}

key=$(tarball_key)
if [ -d "$LINUX/.git" ] && [ "$(git -C "$LINUX" config balloon.base 2>/dev/null)" = "$key" ] &&
	git -C "$LINUX" rev-parse -q --verify refs/tags/base >/dev/null; then
	:
else
	make_base "$key"
fi

# apply_series DIR BRANCH: check out BRANCH at base in DIR and git am every
# patch of `series`. On failure print the patch name and its rejects.
apply_series() {
	local dir=$1 branch=$2 n=0 f p
	(
	cd "$dir"
	git am --abort >/dev/null 2>&1 || true
	git checkout -q -f -B "$branch" base
	while read -r f; do
		p=$TOP/patches/$f
		[ -f "$p" ] || die "series lists $f but patches/$f does not exist"
		if ! git am -q --committer-date-is-author-date "$p" >/dev/null 2>"$BUILD/am.err"; then
			say "tree: patch $f does not apply"
			cat "$BUILD/am.err" >&2
			git am --abort >/dev/null 2>&1 || true
			say "tree: rejects of $f:"
			git apply --reject "$p" 2>&1 | sed 's/^/  /' >&2 || true
			git ls-files -o -z -- '*.rej' | xargs -0 -r cat >&2
			# Undo what the reject run wrote: .rej/.orig files, and files
			# the patch creates (untracked, and ignored by Debian's top-level
			# .gitignore, so neither checkout nor a plain clean removes them).
			git apply --numstat "$p" 2>/dev/null | cut -f3 | while read -r q; do
				rm -f "$q.rej" "$q.orig"
				git ls-files --error-unmatch -- "$q" >/dev/null 2>&1 || rm -f "$q"
			done
			git ls-files -o -z -- '*.rej' '*.orig' | xargs -0 -r rm -f
			git checkout -q -f "$branch"
			die "patch $f failed to apply (after $n of $(series_files | wc -l))"
		fi
		n=$((n + 1))
	done < <(series_files)
	say "tree: $dir: base $(git rev-parse --short base) + $n patches on branch $branch"
	)
}

# --worktree DIR BRANCH: apply the series in a scratch worktree of the base
# repository (used by make check; build/linux itself is left alone).
if [ "${1:-}" = --worktree ]; then
	wt=$(realpath -m "$2") branch=$3
	if [ ! -e "$wt/.git" ]; then
		rm -rf "$wt"
		git -C "$LINUX" worktree prune
		git -C "$LINUX" worktree add -q --detach "$wt" base
	fi
	apply_series "$wt" "$branch"
	exit 0
fi

cd "$LINUX"
pkey=$(patches_key)
tip=$(git rev-parse -q --verify refs/heads/series || true)
rec_tip=$(git config balloon.tip || true)
rec_pkey=$(git config balloon.patches || true)
dirty=$(git status --porcelain --untracked-files=no)

if [ -n "$tip" ] && [ "$tip" != "$rec_tip" ] && [ "$FORCE" != 1 ]; then
	die "build/linux branch 'series' has commits that were not exported; run 'make patches' to keep them, or FORCE=1 to discard them"
fi
if [ -n "$dirty" ] && [ "$FORCE" != 1 ]; then
	die "build/linux has uncommitted changes; commit and 'make patches', or FORCE=1 to discard them"
fi
if [ -n "$tip" ] && [ "$tip" = "$rec_tip" ] && [ "$pkey" = "$rec_pkey" ] &&
	[ "$(git symbolic-ref -q HEAD)" = refs/heads/series ] && [ -z "$dirty" ]; then
	say "tree: $LINUX is up to date ($(git rev-list --count base..series) patches on base)"
	exit 0
fi

if ! apply_series "$LINUX" series; then
	# Remember the partial result as ours, so that the next run retries.
	git config balloon.tip "$(git rev-parse series)"
	git config balloon.patches broken
	exit 1
fi
git config balloon.tip "$(git rev-parse series)"
git config balloon.patches "$pkey"
