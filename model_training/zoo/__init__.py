"""The checkpoint's portable form: a bioimage.io model package (``cellcount-export``).

Bioimage analysts run models in Fiji (deepImageJ), napari, QuPath and ilastik, which all read
the BioImage Model Zoo's package format (``rdf.yaml``, spec 0.5). ``model_training.zoo`` writes a
checkpoint as such a package and reads one back. It needs the ``bioimageio`` extra
(``pip install 'cellcount[bioimageio]'``); nothing else in the project imports it.
"""
