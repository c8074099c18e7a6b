"""The peak-memory sampler the memory benchmarks' child processes run (their code's prelude).

``PEAK_SAMPLER`` defines ``anon_mib()`` (the process's anonymous resident memory, what it
allocated; mapped files' pages are page cache) and ``sample_peak()``, which samples it every
2 ms in a thread and returns a function that stops and returns the peak.
"""

import textwrap

PEAK_SAMPLER = textwrap.dedent("""
    import threading, time

    def anon_mib():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon"):
                return int(line.split()[1]) / 1024

    def sample_peak():
        peak, done = [anon_mib()], [False]

        def sample():
            while not done[0]:
                peak[0] = max(peak[0], anon_mib())
                time.sleep(0.002)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()

        def stop():
            done[0] = True
            thread.join()
            return max(peak[0], anon_mib())
        return stop
""")
