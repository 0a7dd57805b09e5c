"""Result documents: their formats and schemas, verdicts, statistics, fits, tables and run
folders. It reads data only: nothing here imports the kernel, the harness or a command."""
