"""Run folders and what is written into them: the folder's identity, finished check, manifest and atomic
writes (:mod:`.folder`), shards (:mod:`.shards`), file formats (:mod:`.outputs`), the sidecar record of
an image (:mod:`.records`), the report (:mod:`.report`, with a second classifier: :mod:`.judge`),
contact sheets (:mod:`.sheets`) and the HTML gallery (:mod:`.gallery`)."""
