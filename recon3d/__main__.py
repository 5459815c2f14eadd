import sys

from recon3d.cli import main

sys.exit(main())
