"""A target process driven over its stdin and stdout: one JSON line when it is ready, then one JSON line
in answer to each command line. Used by run.py (target.py) and service.py (service_heap.py)."""

import json
import subprocess


class Driven:
    def __init__(self, args):
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            raise RuntimeError("%s: the target did not start (status %s)" % (" ".join(args), self.p.returncode))
        self.hello = json.loads(line)

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        """Asks the target to quit; kills it if it does not within 10 s."""
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()
            self.p.wait()
