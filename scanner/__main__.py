import sys

from .cli import entry, main

# The program itself (python -m scanner): entry() exits without the interpreter's teardown.
# Run from other code (runpy.run_module) main() returns to it through SystemExit as usual.
if sys.modules["__main__"].__dict__ is globals():
    entry()
else:
    main()
