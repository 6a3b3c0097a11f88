"""Rewrites the README's configuration table from the settings! table in
src/config/mod.rs (tests/readme.rs checks that the two agree).

    python3 scripts/config-table.py
"""
import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
src=open(os.path.join(ROOT, 'src/config/mod.rs')).read()
table=src[src.index('settings! {\n    listen'):]
table=table[:table.index('\n}\n')]
entries=re.findall(r'\n    (\w+): [^=]+= "([A-Z0-9_]+)", "((?:[^"\\]|\\.)*)",(.*?)\n        "((?:[^"\\]|\\.)*)";', table, re.S)
rows=[]
for field,name,default,_,meaning in entries:
    d='(empty)' if default=='' else f'`{default}`'
    meaning=meaning.replace('\\"','"')
    rows.append(f'| `PODGATE_{name}` | {d} | {meaning} |')
readme=open(os.path.join(ROOT, 'README.md')).read()
lines=readme.split('\n')
idx=[i for i,l in enumerate(lines) if l.startswith('| `PODGATE_')]
first,last=idx[0],idx[-1]
assert last-first+1==len(idx), 'table not contiguous'
lines[first:last+1]=rows
open(os.path.join(ROOT, 'README.md'),'w').write('\n'.join(lines))
print(len(entries),'rows')
