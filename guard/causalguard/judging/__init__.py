"""Values as the chatbot says them: prompt sets, the reply-level value judge and reply quality.

The offline runs that use these (reply generation, judge validation, the behavioural report) live
in ``causalguard.graphs.behaviour``; serving-time code (audits) uses this package directly.
"""
