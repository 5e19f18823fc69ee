"""Cron and heartbeat: schedules, jobs in the store, the scheduler, and the heartbeat rules.

``schedule`` parses and evaluates schedules, ``jobs`` is the job model in OpenClaw's wire shape
and what a run does to a job, ``scheduler`` runs due jobs through the owner's ``run_job``, and
``heartbeat`` decides who gets a heartbeat, when a tick runs and what of its reply is delivered.
The jobs themselves live in the session store (``sessions.cronstore``).
"""
