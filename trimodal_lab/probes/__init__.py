"""Probes of trained policies and of the tasks, each ``python -m trimodal_lab.probes.<name> --help``:
``state_policy`` (behaviour cloning from the true state: the demonstrations' ceiling),
``oracle_state`` (a state head answered with the simulator's truth), ``state_probe`` (how well a
state head places things), ``expert_takeover`` (can the expert finish from the policy's states),
``instruction_swap`` (does another task's instruction change the actions),
``check_language_tasks`` (the language-critical groups on many layouts), ``nearest_phrasing``
(new wording snapped to the nearest training phrasing, zero-shot), ``text_screen`` (how the text
tower is trained for new wording, text only) and ``language_table`` (the language runs' tables)."""
