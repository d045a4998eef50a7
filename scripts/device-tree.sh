#!/usr/bin/env bash
# What travels to a lent device machine, and keeping committed results out of it for one call.
#
#   scripts/device-tree.sh size [CARRY...]   bytes that would travel: tracked and untracked-not-ignored files, plus
#                                            the ignored paths a call would carry; the device tool takes 64 MiB
#   scripts/device-tree.sh hide [PATH...]    take PATHs (default: reports) out of git's index and ignore them in
#                                            .git/info/exclude, so they stay here; the files themselves are untouched
#   scripts/device-tree.sh restore           put the hidden paths back into the index and drop the ignore lines
#
# A device call carries the working tree as git sees it. Committed runs grow with every cell (about 0.44 MB for a
# leaderboard cell), and a track's GPU run needs only the code and its data, so hide reports/ for that call, carry
# what it needs (e.g. .data/mnist), and restore straight after. `hide` refuses while anything is staged, and
# `restore` refuses while nothing is hidden, so a commit in between cannot take the hidden files' deletion along
# unnoticed: `git status` lists them as deleted until `restore`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude=$(git rev-parse --git-path info/exclude)
begin="# device-tree.sh: hidden for a device call; undo with scripts/device-tree.sh restore"
end="# device-tree.sh: end"
limit=$((64 * 1024 * 1024))

travelling() {  # bytes of what travels now, plus the ignored paths named as carried
  local bytes
  bytes=$( { git ls-files -z --cached --others --exclude-standard; for path in "$@"; do
               find "$path" -type f -print0; done; } | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  echo "${bytes:-0}"
}

hidden() {  # the paths between the markers, one a line
  [[ -f $exclude ]] || return 0
  sed -n "\\|^$begin\$|,\\|^$end\$|p" "$exclude" | grep -v '^#' | sed 's|^/||; s|/$||'
}

case "${1:-}" in
  size)
    shift
    bytes=$(travelling "$@")
    printf '%s bytes would travel (%.1f MiB of the 64 MiB limit)\n' "$bytes" "$(awk "BEGIN{print $bytes/1048576}")"
    (( bytes <= limit )) || { echo "over the limit: hide reports/ (scripts/device-tree.sh hide) or carry less" >&2
                              exit 1; }
    ;;
  hide)
    shift
    (( $# )) || set -- reports
    [[ -z $(hidden) ]] || { echo "error: already hidden: $(hidden | tr '\n' ' ')(restore first)" >&2; exit 2; }
    git diff --cached --quiet || { echo "error: the index has staged changes; commit or unstage them first" >&2
                                   exit 2; }
    for path in "$@"; do
      [[ -n $(git ls-files -- "$path") ]] || { echo "error: $path: no tracked files there" >&2; exit 2; }
    done
    before=$(travelling)
    git rm -r -q --cached -- "$@"
    { echo "$begin"; for path in "$@"; do echo "/${path%/}/"; done; echo "$end"; } >> "$exclude"
    after=$(travelling)
    echo "hidden from the index (files kept): $*; what travels: $before → $after bytes; run" \
         "'scripts/device-tree.sh restore' after the call"
    ;;
  restore)
    mapfile -t paths < <(hidden)
    (( ${#paths[@]} )) || { echo "error: nothing is hidden" >&2; exit 2; }
    sed -i "\\|^$begin\$|,\\|^$end\$|d" "$exclude"
    git reset -q -- "${paths[@]}"
    changed=$(git status --porcelain -- "${paths[@]}")
    echo "restored: ${paths[*]}${changed:+ (changed since the last commit: $(wc -l <<< "$changed") file(s))}"
    ;;
  *)
    echo "usage: scripts/device-tree.sh size [CARRY...] | hide [PATH...] | restore" >&2
    exit 2
    ;;
esac
