import sys

from studybot.cli import main

sys.exit(main())
