//! Gateway API status, computed without I/O from the objects and the compile's reports.
