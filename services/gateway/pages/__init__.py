"""What the gateway serves to browsers (:mod:`.browser`): the widget's script and style, the admin page, from
``static/``. Outside the API document; every route here is public."""
