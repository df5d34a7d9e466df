import sys

from dgn import command_line


sys.exit(command_line())
