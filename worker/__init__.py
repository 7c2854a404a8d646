"""RQ job functions and the code only workers run (reading chunks, uploading parts)."""
