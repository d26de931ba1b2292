"""The local test network: PSTN simulator (`vipr pstn`), test phones, and `vipr demo`.

sdp.py, dialog.py, numberplan.py are pure (no I/O); pstn.py and ua.py are asyncio shells on
the SIP core; workdir.py writes certificates and configs; network.py runs the processes;
demo.py plays the story.
"""
