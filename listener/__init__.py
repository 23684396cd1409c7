"""The pedfrac service: DICOM SCP and SCU, the quiet-period watcher, the job runner and the CLI."""
