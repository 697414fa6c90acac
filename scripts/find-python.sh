#!/usr/bin/env sh
# Print the path of a Python >= 3.12 (Django 6 needs it), pyenv-installed ones included; fail clearly.
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for candidate in "${PYTHON:-}" python3.14 python3.13 python3.12 python3; do
  [ -n "$candidate" ] || continue
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if ok "$path"; then echo "$path"; exit 0; fi
done
if command -v pyenv >/dev/null 2>&1; then
  for path in $(ls -d "$(pyenv root)"/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -V); do
    if ok "$path"; then echo "$path"; exit 0; fi
  done
fi
echo "XES Portal needs Python 3.12 or newer and none was found. Install it (e.g. 'apt-get install python3.12' or 'pyenv install 3.12'), or set PYTHON=/path/to/python3.12." >&2
exit 1
