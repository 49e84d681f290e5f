"""Building and running Keras models: the families (``mlp``, ``cnn``, a user's ``custom``
builder, a keras.applications ``backbone``), their regularization, saving and loading, the
devices they run on and the memory their activations take.

Empty on purpose: importing one module of the package (the evaluate stage's ``saving``) must
not import the families, so each stage depends on the files it runs and no others."""
